"""The HTTP service: events in, unsubscribe, preferences, surveys, referrals and tracking links.

`engine.http.app.create_app(settings)` builds the ASGI app; nothing is created on import.
"""
