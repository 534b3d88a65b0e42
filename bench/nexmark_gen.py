#!/usr/bin/env python3
"""Deterministic Nexmark-style event generator shared by Weir and Flink (bench/sql.sh).

Usage: nexmark_gen.py EVENTS OUTPUT_DIR [RATE]

Writes three JSON-lines files into OUTPUT_DIR, one per Nexmark table:

    person.jsonl   {"id","name","emailAddress","creditCard","city","state","dateTime","extra"}
    auction.jsonl  {"id","itemName","description","initialBid","reserve","dateTime","expires",
                    "seller","category","extra"}
    bid.jsonl      {"auction","bidder","price","channel","url","dateTime","extra"}

and counts.json with the number of rows of each table.

The event stream follows Nexmark's generator model: events are numbered 0..EVENTS-1 and in
every block of 50 events the first is a person, the next 3 are auctions and the other 46 are
bids (Nexmark's default proportions 1:3:46). Ids start at 1000; an auction's seller is a
recent person (a quarter of them a "hot" seller); half of the bids go to the latest "hot"
auction and the rest to a recent one; three quarters of the bidders are hot bidders; prices
are 100 * 10^U(0,6) (log-uniform, 100 .. 100,000,000); categories 10..14; channels mostly
Google/Facebook/Baidu/Apple. Event n has dateTime = 2026-01-01 00:00:00 UTC + n * 1000 / RATE
ms (RATE events per second, default 10,000), written as 'yyyy-MM-dd HH:mm:ss.SSS' (the form
Flink's json format reads for TIMESTAMP(3), and Weir's too), so dateTime never decreases,
within a table and across tables.

Stdlib only, fixed seed: the same EVENTS and RATE always give byte-identical files. If the
files exist and their .meta matches, they are kept.
"""
import json
import os
import random
import sys

SEED = 20260107
GEN_VERSION = "v1"
START_MS = 1767225600000  # 2026-01-01T00:00:00Z
FIRST_ID = 1000
PROPORTION = 50  # person 1, auction 3, bid 46 per 50 events
NUM_ACTIVE_PEOPLE = 1000
PERSON_ID_LEAD = 10
NUM_IN_FLIGHT_AUCTIONS = 100
AUCTION_ID_LEAD = 10
HOT_SELLER_RATIO = 4
HOT_AUCTION_RATIO = 2
HOT_BIDDER_RATIO = 4
FIRST_NAMES = ["Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah",
               "Deiter", "Walter"]
LAST_NAMES = ["Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones",
              "Noris"]
CITIES = ["Phoenix", "Los Angeles", "San Francisco", "Boise", "Portland", "Bend", "Redmond",
          "Seattle", "Kent", "Cheyenne"]
STATES = ["AZ", "CA", "ID", "OR", "WA", "WY"]
CHANNELS = ["Google", "Facebook", "Baidu", "Apple"]
CHUNK = 20_000
POOL = 4096
LETTERS = "abcdefghijklmnopqrstuvwxyz"


def meta_line(events, rate):
    return f"{GEN_VERSION} seed={SEED} events={events} rate={rate}\n"


def civil(days):
    # days since 1970-01-01 -> (y, m, d) (Howard Hinnant's algorithm)
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    return (y + 1 if m <= 2 else y), m, d


class TsFormat:
    """epoch ms -> 'yyyy-MM-dd HH:mm:ss.SSS', caching the date part per day."""

    def __init__(self):
        self.day = None
        self.prefix = ""

    def __call__(self, ms):
        day, rem = divmod(ms, 86_400_000)
        if day != self.day:
            y, m, d = civil(day)
            self.day, self.prefix = day, f"{y:04d}-{m:02d}-{d:02d} "
        s, milli = divmod(rem, 1000)
        h, s = divmod(s, 3600)
        mi, s = divmod(s, 60)
        return f"{self.prefix}{h:02d}:{mi:02d}:{s:02d}.{milli:03d}"


def generate(events, out_dir, rate):
    rng = random.Random(SEED)
    rand, randrange = rng.random, rng.randrange

    def pool(length_lo, length_hi):
        return [''.join(rng.choice(LETTERS) for _ in range(rng.randint(length_lo, length_hi)))
                for _ in range(POOL)]

    words3, words5, words7 = pool(3, 3), pool(5, 5), pool(7, 7)
    names20, desc100 = pool(20, 20), pool(90, 110)
    extras = pool(0, 24)
    fmt = TsFormat()
    tmp = {t: os.path.join(out_dir, f"{t}.jsonl.tmp") for t in ("person", "auction", "bid")}
    files = {t: open(p, "w", encoding="ascii", newline="\n") for t, p in tmp.items()}
    counts = {"person": 0, "auction": 0, "bid": 0}
    persons = 0   # people generated so far (ids FIRST_ID .. FIRST_ID+persons-1)
    auctions = 0
    n = 0
    while n < events:
        end = min(events, n + CHUNK)
        out = {"person": [], "auction": [], "bid": []}
        p_app, a_app, b_app = out["person"].append, out["auction"].append, out["bid"].append
        for n in range(n, end):
            ms = START_MS + n * 1000 // rate
            ts = fmt(ms)
            kind = n % PROPORTION
            if kind == 0:
                pid = FIRST_ID + persons
                persons += 1
                name = f"{FIRST_NAMES[randrange(len(FIRST_NAMES))]} {LAST_NAMES[randrange(len(LAST_NAMES))]}"
                email = f"{words7[randrange(POOL)]}@{words5[randrange(POOL)]}.com"
                card = " ".join(f"{randrange(10000):04d}" for _ in range(4))
                p_app(f'{{"id":{pid},"name":"{name}","emailAddress":"{email}",'
                      f'"creditCard":"{card}","city":"{CITIES[randrange(len(CITIES))]}",'
                      f'"state":"{STATES[randrange(len(STATES))]}","dateTime":"{ts}",'
                      f'"extra":"{extras[randrange(POOL)]}"}}\n')
            elif kind <= 3:
                aid = FIRST_ID + auctions
                auctions += 1
                # seller: a hot seller (every 4th recent person id), else a recent person
                if persons == 0:
                    seller = FIRST_ID
                elif randrange(HOT_SELLER_RATIO) > 0:
                    seller = FIRST_ID + ((persons - 1) // HOT_SELLER_RATIO) * HOT_SELLER_RATIO
                else:
                    active = min(persons, NUM_ACTIVE_PEOPLE)
                    seller = FIRST_ID + persons - active + randrange(active)
                initial = round(10.0 ** (rand() * 6.0) * 100.0)
                reserve = initial + round(10.0 ** (rand() * 6.0) * 100.0)
                expires = fmt(ms + 2_000 + randrange(20_000))
                a_app(f'{{"id":{aid},"itemName":"{names20[randrange(POOL)]}",'
                      f'"description":"{desc100[randrange(POOL)]}","initialBid":{initial},'
                      f'"reserve":{reserve},"dateTime":"{ts}","expires":"{expires}",'
                      f'"seller":{seller},"category":{10 + randrange(5)},'
                      f'"extra":"{extras[randrange(POOL)]}"}}\n')
            else:
                # auction: half of the bids go to the hot (latest even) auction
                if auctions == 0:
                    auction = FIRST_ID
                elif randrange(HOT_AUCTION_RATIO) > 0:
                    auction = FIRST_ID + ((auctions - 1) // HOT_AUCTION_RATIO) * HOT_AUCTION_RATIO
                else:
                    active = min(auctions, NUM_IN_FLIGHT_AUCTIONS)
                    auction = FIRST_ID + auctions - active + randrange(active + AUCTION_ID_LEAD)
                if persons == 0:
                    bidder = FIRST_ID
                elif randrange(HOT_BIDDER_RATIO) > 0:
                    bidder = FIRST_ID + ((persons - 1) // HOT_BIDDER_RATIO) * HOT_BIDDER_RATIO + 1
                else:
                    active = min(persons, NUM_ACTIVE_PEOPLE)
                    bidder = FIRST_ID + persons - active + randrange(active + PERSON_ID_LEAD)
                price = round(10.0 ** (rand() * 6.0) * 100.0)
                c = randrange(10)
                if c < 4:
                    channel = CHANNELS[c]
                    url = (f"https://www.nexmark.com/{words5[randrange(POOL)]}/"
                           f"{words5[randrange(POOL)]}/{words5[randrange(POOL)]}/item.htm?query=1")
                else:
                    cid = randrange(10_000)
                    channel = f"channel-{cid}"
                    url = (f"https://www.nexmark.com/{words5[randrange(POOL)]}/"
                           f"{words5[randrange(POOL)]}/{words5[randrange(POOL)]}/item.htm?query=1"
                           f"&channel_id={cid}")
                b_app(f'{{"auction":{auction},"bidder":{bidder},"price":{price},'
                      f'"channel":"{channel}","url":"{url}","dateTime":"{ts}",'
                      f'"extra":"{extras[randrange(POOL)]}"}}\n')
        n = end
        for t, lines in out.items():
            files[t].write("".join(lines))
            counts[t] += len(lines)
    for t, f in files.items():
        f.close()
        os.replace(tmp[t], os.path.join(out_dir, f"{t}.jsonl"))
    counts["events"] = events
    counts["rate"] = rate
    with open(os.path.join(out_dir, "counts.json"), "w") as f:
        f.write(json.dumps(counts) + "\n")
    with open(os.path.join(out_dir, ".meta"), "w") as f:
        f.write(meta_line(events, rate))
    return counts


def up_to_date(out_dir, events, rate):
    try:
        with open(os.path.join(out_dir, ".meta")) as f:
            if f.read() != meta_line(events, rate):
                return False
    except OSError:
        return False
    return all(os.path.exists(os.path.join(out_dir, name))
               for name in ("person.jsonl", "auction.jsonl", "bid.jsonl", "counts.json"))


def main(argv):
    if len(argv) not in (3, 4):
        print(__doc__, file=sys.stderr)
        return 2
    events, out_dir = int(argv[1]), argv[2]
    rate = int(argv[3]) if len(argv) == 4 else 10_000
    if events <= 0 or rate <= 0:
        print("EVENTS and RATE must be positive", file=sys.stderr)
        return 2
    os.makedirs(out_dir, exist_ok=True)
    if up_to_date(out_dir, events, rate):
        print(f"[nexmark] {out_dir}: {events} events already present, reusing", file=sys.stderr)
        return 0
    counts = generate(events, out_dir, rate)
    print(f"[nexmark] wrote {out_dir}: {counts}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
