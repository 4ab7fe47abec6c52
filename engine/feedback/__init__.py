"""Delivery feedback: the email providers' webhooks (Amazon SES through SNS, SendGrid, Postmark,
Mailgun), verified as each provider documents it, turned into reports, matched to the send they
are about, and recorded as reserved events and suppressions (CONTRACT 10, 14).

One module per provider side by side (`ses`, `sendgrid`, `postmark`, `mailgun`): each verifies a
request and normalises its payload into `Report`s. `record` matches reports to sends and records
them once; `receive` is what the HTTP routes call.
"""
