"""A realistic shop's events, deterministic for a seed: the data the demo, tests and benchmarks share.

Customers arrive over the period (identify + signed_up), browse, fill carts, abandon or buy, buy
again, answer NPS surveys, refer friends, and some unsubscribe; a share are past buyers from before
the period (the lapsed). Activity follows daytime in each customer's own time zone.
"""

from __future__ import annotations

import heapq
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO
from zoneinfo import ZoneInfo

DEFAULT_END = datetime(2026, 11, 1, tzinfo=UTC)
FIRST_NAMES = [
    "Ada",
    "Ben",
    "Chloe",
    "David",
    "Emma",
    "Finn",
    "Grace",
    "Hugo",
    "Ines",
    "Jonas",
    "Kira",
    "Liam",
    "Mia",
    "Noah",
    "Olga",
    "Paul",
    "Rosa",
    "Sam",
    "Tara",
    "Umar",
    "Vera",
    "Will",
    "Yara",
    "Zoe",
]
LAST_NAMES = [
    "Lovelace",
    "Berg",
    "Costa",
    "Dubois",
    "Evans",
    "Fischer",
    "Garcia",
    "Hansen",
    "Ito",
    "Jensen",
    "Kowalski",
    "Lopez",
    "Meyer",
    "Novak",
    "Olsen",
    "Petit",
    "Rossi",
    "Schmidt",
    "Tanaka",
    "Weber",
]
ZONES = [
    ("Europe/Berlin", "de-DE", 30),
    ("Europe/London", "en-GB", 20),
    ("America/New_York", "en-US", 25),
    ("America/Los_Angeles", "en-US", 15),
    ("Asia/Tokyo", "ja-JP", 10),
]
SOURCES = [("search", 30), ("social", 25), ("ads", 20), ("direct", 15), ("email", 5), ("referral", 5)]
CATEGORIES = {
    "shoes": ["Trail runner", "City sneaker", "Hiking boot", "Sandal", "Running flat"],
    "jackets": ["Rain shell", "Down jacket", "Fleece", "Windbreaker", "Softshell"],
    "bags": ["Day pack", "Duffel", "Tote", "Hip pack", "Laptop sleeve"],
    "accessories": ["Beanie", "Gloves", "Socks 3-pack", "Water bottle", "Sunglasses"],
}


@dataclass(frozen=True)
class Product:
    product_id: str
    name: str
    category: str
    price: float
    url: str
    image: str


def _catalogue() -> list[Product]:
    rng = random.Random(42)
    out: list[Product] = []
    for category, names in CATEGORIES.items():
        for name in names:
            for variant in ("", " Pro", " Lite"):
                pid = f"p-{len(out) + 1:03d}"
                price = round(rng.uniform(15, 60) if category == "accessories" else rng.uniform(45, 260), 2)
                out.append(
                    Product(
                        pid,
                        f"{name}{variant}".strip(),
                        category,
                        price,
                        f"https://shop.example.com/products/{pid}",
                        f"https://shop.example.com/img/{pid}.jpg",
                    )
                )
    return out


CATALOGUE: list[Product] = _catalogue()


@dataclass(frozen=True)
class ShopConfig:
    customers: int = 2000
    days: int = 60
    seed: int = 1
    start: datetime | None = None

    @property
    def begin(self) -> datetime:
        return self.start if self.start is not None else DEFAULT_END - timedelta(days=self.days)

    @property
    def end(self) -> datetime:
        return self.begin + timedelta(days=self.days)


def _weighted(rng: random.Random, items: list[tuple[Any, ...]]) -> tuple[Any, ...]:
    total = sum(i[-1] for i in items)
    x = rng.uniform(0, total)
    for item in items:
        x -= item[-1]
        if x <= 0:
            return item
    return items[-1]


def _daytime(rng: random.Random, day: datetime, tz: ZoneInfo) -> datetime:
    local = day.astimezone(tz).replace(
        hour=rng.randint(8, 21), minute=rng.randrange(60), second=rng.randrange(60), microsecond=0
    )
    return local.astimezone(UTC)


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _item(p: Product, qty: int = 1) -> dict[str, Any]:
    return {
        "product_id": p.product_id,
        "name": p.name,
        "price": p.price,
        "qty": qty,
        "url": p.url,
        "category": p.category,
    }


def referral_code(seed: int, n: int) -> str:
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    rng = random.Random(seed * 7_919 + n)
    return "".join(rng.choice(alphabet) for _ in range(7)) + alphabet[n % len(alphabet)]


class _Customer:
    def __init__(
        self,
        cfg: ShopConfig,
        n: int,
        referred_by: str | None = None,
        arrival: datetime | None = None,
        old_buyer: bool = False,
    ) -> None:
        self.cfg = cfg
        self.n = n
        self.rng = random.Random(cfg.seed * 1_000_003 + n)
        self.id = f"c-{n:07d}"
        zone, self.locale, _ = _weighted(self.rng, ZONES)
        self.zone = ZoneInfo(zone)
        self.first = self.rng.choice(FIRST_NAMES)
        self.last = self.rng.choice(LAST_NAMES)
        self.referred_by = referred_by
        self.arrival = arrival or cfg.begin + timedelta(seconds=self.rng.uniform(0, cfg.days * 86400))
        self.seq = 0
        self.old_buyer = old_buyer

    def ev(
        self, kind: str, ts: datetime, name: str | None = None, **payload: Any
    ) -> tuple[datetime, str, dict[str, Any]]:
        self.seq += 1
        body: dict[str, Any] = {
            "type": kind,
            "customer_id": self.id,
            "timestamp": _iso(ts),
            "message_id": f"gen-{self.cfg.seed}-{self.n}-{self.seq}",
        }
        if name:
            body["event"] = name
        body.update(payload)
        return (ts, body["message_id"], body)

    def events(self) -> list[tuple[datetime, str, dict[str, Any]]]:
        rng, cfg = self.rng, self.cfg
        out: list[tuple[datetime, str, dict[str, Any]]] = []
        old_buyer = self.old_buyer
        start = self.arrival
        traits: dict[str, Any] = {
            "email": f"{self.first.lower()}.{self.last.lower()}.{self.n}@example.com",
            "first_name": self.first,
            "last_name": self.last,
            "timezone": str(self.zone),
            "locale": self.locale,
            "source": "referral" if self.referred_by else _weighted(rng, SOURCES)[0],
            "referral_code": referral_code(cfg.seed, self.n),
        }
        if self.referred_by:
            traits["referred_by"] = self.referred_by
        t = _daytime(rng, start, self.zone)
        out.append(self.ev("identify", t, traits=traits))
        out.append(
            self.ev("track", t + timedelta(seconds=5), "signed_up", properties={"source": traits["source"]})
        )
        if old_buyer:
            p = rng.choice(CATALOGUE)
            t2 = t + timedelta(hours=rng.uniform(1, 48))
            out.append(
                self.ev(
                    "track",
                    t2,
                    "order_placed",
                    properties={
                        "order_id": f"o-{self.n}-0",
                        "value": p.price,
                        "currency": "EUR",
                        "items": [_item(p)],
                    },
                )
            )
            return out
        if rng.random() < 0.03:
            out.append(
                self.ev(
                    "track",
                    t + timedelta(days=rng.uniform(1, 20)),
                    "unsubscribed",
                    properties={"channel": "email"},
                )
            )
        if rng.random() > 0.85:
            return out  # signed up, never came back
        t = t + timedelta(hours=rng.uniform(0.2, 72))
        viewed = rng.sample(CATALOGUE, rng.randint(2, 12))
        for p in viewed:
            t = t + timedelta(minutes=rng.uniform(1, 240))
            out.append(
                self.ev(
                    "track",
                    t,
                    "product_viewed",
                    properties={
                        "product_id": p.product_id,
                        "name": p.name,
                        "price": p.price,
                        "category": p.category,
                        "url": p.url,
                        "image": p.image,
                    },
                )
            )
        if rng.random() > 0.45:
            if rng.random() < 0.15:  # comes back a few days later and fills a cart after all
                p = rng.choice(viewed)
                back = t + timedelta(days=rng.uniform(1, 3))
                later = {"cart_id": f"c-{self.n}-b", "cart_value": p.price, "items": [_item(p)]}
                out.append(self.ev("track", back, "cart_updated", properties=later))
            return out  # browsed only
        cart = viewed[: rng.randint(1, min(3, len(viewed)))]
        items = [_item(p, rng.choice([1, 1, 1, 2])) for p in cart]
        value = round(sum(i["price"] * i["qty"] for i in items), 2)
        t = t + timedelta(minutes=rng.uniform(1, 60))
        cart_id = f"c-{self.n}-0"
        out.append(
            self.ev(
                "track",
                t,
                "cart_updated",
                properties={"cart_id": cart_id, "cart_value": value, "items": items},
            )
        )
        fate = rng.random()
        if fate < 0.10:
            out.append(
                self.ev(
                    "track",
                    t + timedelta(minutes=rng.uniform(5, 90)),
                    "cart_cleared",
                    properties={"cart_id": cart_id},
                )
            )
            return out
        if fate < 0.45:
            # abandoned; a share come back days later and buy (the reminder's chance)
            if rng.random() < 0.3:
                t = t + timedelta(hours=rng.uniform(3, 72))
            else:
                return out
        else:
            t = t + timedelta(minutes=rng.uniform(3, 45))
        orders = 1 + (rng.randint(1, 3) if rng.random() < 0.35 else 0)
        for k in range(orders):
            if k:
                t = t + timedelta(days=rng.uniform(8, 40))
                p = rng.choice(CATALOGUE)
                items = [_item(p)]
                value = p.price
            props: dict[str, Any] = {
                "order_id": f"o-{self.n}-{k}",
                # the first order checks out the cart; a later one is a cart of its own, bought at once
                "cart_id": cart_id if k == 0 else f"c-{self.n}-{k}",
                "value": value,
                "currency": "EUR",
                "items": items,
            }
            out.append(self.ev("track", t, "order_placed", properties=props))
            if k == 0 and rng.random() < 0.4:
                score = _weighted(
                    rng,
                    [(s, w) for s, w in zip(range(11), [2, 1, 1, 2, 2, 4, 8, 12, 18, 25, 25], strict=True)],
                )[0]
                answer: dict[str, Any] = {"survey": "nps", "score": score}
                if rng.random() < 0.3:
                    answer["comment"] = rng.choice(
                        ["Fast delivery!", "Great quality", "Too expensive", "Sizing was off", "Love it"]
                    )
                out.append(
                    self.ev(
                        "track", t + timedelta(days=rng.uniform(7, 9)), "survey_answered", properties=answer
                    )
                )
        return out


def generate_events(config: ShopConfig) -> Iterator[dict[str, Any]]:
    """All events of the shop, sorted by timestamp, streamed (customers are made in arrival order)."""
    rng = random.Random(config.seed)
    # about 5% are past buyers from before the period (some of them lapse); everyone else arrives in it
    people = []
    for _ in range(config.customers):
        old = rng.random() < 0.05
        offset = -rng.uniform(70, 200) * 86400 if old else rng.uniform(0, config.days * 86400)
        people.append((offset, old))
    people.sort()
    heap: list[tuple[datetime, str, dict[str, Any]]] = []
    next_n = config.customers
    for n, (offset, old) in enumerate(people):
        arrival = config.begin + timedelta(seconds=offset)
        while heap and heap[0][0] <= arrival - timedelta(days=2):  # daytime may move an event back a day
            yield from _emit(heapq.heappop(heap), config)
        customer = _Customer(config, n, arrival=arrival, old_buyer=old)
        for item in customer.events():
            heapq.heappush(heap, item)
            body = item[2]
            # promoters bring friends, who arrive a few days later with the referral code
            if (
                body.get("event") == "survey_answered"
                and body["properties"]["score"] >= 9
                and customer.rng.random() < 0.3
            ):
                when = item[0] + timedelta(days=customer.rng.uniform(1, 10))
                if when < config.end:
                    friend = _Customer(
                        config, next_n, referred_by=referral_code(config.seed, n), arrival=when
                    )
                    next_n += 1
                    for f in friend.events():
                        heapq.heappush(heap, f)
    while heap:
        yield from _emit(heapq.heappop(heap), config)


def _emit(item: tuple[datetime, str, dict[str, Any]], config: ShopConfig) -> Iterator[dict[str, Any]]:
    if item[0] < config.end:
        yield item[2]


def write_events(config: ShopConfig, out: TextIO) -> int:
    n = 0
    for event in generate_events(config):
        out.write(json.dumps(event, separators=(",", ":")) + "\n")
        n += 1
    return n
