#!/usr/bin/env python3
"""Writes docs/benchmarks.md and docs/benchmarks.svg from a criterion run.

Reads every `<criterion>/**/new/benchmark.json` + `estimates.json` (the
median estimate of the time per iteration), the side measurements in
`<criterion>/sessionkit-extra/*.json` and the machine/version facts in
`--env` (written by scripts/bench.sh). Python 3.11 standard library only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import html
import json
import math
import pathlib
import sys

SK = "sessionkit"
RAW = "raw"
TOWER = "tower-sessions"
TOWER_MOKA = "tower-sessions-moka"
SK_SUBJECT = "sessionkit+subject"

# Issue 8 targets: (kind, limit) where kind "time" means
# sessionkit_time / other_time <= limit, "tput" means
# sessionkit_throughput / other_throughput >= limit.
RAW_TARGETS = {
    "redis": ("time", 1.10),
    "sqlite": ("time", 1.15),
    "postgres": ("time", 1.15),
    "mysql": ("time", 1.15),
    "cache": ("time", 1.50),
    "cached_redis": ("time", 1.50),
    "jwt/encode": ("time", 1.05),
    "jwt/verify": ("time", 1.05),
    "jwt/verify_revocation": ("time", 1.25),
}


def raw_target(group: str):
    backend, _, op = group.partition("/")
    if backend == "valkey":
        # Issue 16: native SET IFEQ saves on Valkey 8.1.
        return {"save": ("time", 1.10), "save_c64": ("tput", 0.90)}.get(op)
    if backend == "jwt":
        return RAW_TARGETS.get(group)
    if op.endswith("_c64"):
        # Redis: at least 0.9x raw throughput at concurrency 64.
        return ("tput", 0.90) if backend == "redis" else None
    if backend == "cached_redis" and op != "load":
        return None  # a write-through save is a Redis write; no raw target
    if backend == "memory":
        return None  # no target set for MemoryStore vs raw moka
    return RAW_TARGETS.get(backend)


def tower_target(group: str):
    backend, _, op = group.partition("/")
    if backend == "cached_redis":
        return ("tput", 1.50)  # >= 1.5x as fast on cached loads and saves
    return ("tput", 1.00)  # at least as fast on every shared operation


# Issue 18, the cost of protecting secrets at rest (benches/secrets.rs):
# (group prefix, "with" contender, "without" contender, part, backend).
SECRETS = "secrets"
SECRETS_ROWS = [
    ("secrets/id_hash_memory", "hashed", "plain", "ID hashing (default)", "MemoryStore"),
    ("secrets/id_hash_memory", "keyed", "plain", "ID hashing with `id_hash_key`", "MemoryStore"),
    ("secrets/id_hash_redis", "hashed", "plain", "ID hashing (default)", "Redis"),
    ("secrets/encryption_memory", "encrypted", "plain", "payload encryption", "MemoryStore"),
    ("secrets/encryption_redis", "encrypted", "plain", "payload encryption", "Redis"),
    ("secrets/token", "paseto", "jwt", "PASETO v4.local / JWT HS256", "stateless"),
    ("secrets/token", "paseto", "raw", "PASETO v4.local / raw jsonwebtoken", "stateless"),
    ("secrets/token", "jwt", "raw", "JWT HS256 / raw jsonwebtoken", "stateless"),
]
SECRETS_OPS = ["create", "load", "save", "delete"]


def secrets_rows(runs):
    """One row per (part, backend, operation, payload) measured on both sides."""
    rows = []
    for prefix, with_, without, part, backend in SECRETS_ROWS:
        for op in SECRETS_OPS:
            group = f"{prefix}/{op}"
            payloads = sorted({v for (g, _, v) in runs if g == group},
                              key=lambda p: (len(p or ""), p))
            for p in payloads:
                a, b = runs.get((group, with_, p)), runs.get((group, without, p))
                if a and b:
                    # The confidence intervals of the two medians overlap:
                    # the run cannot tell the two apart.
                    noise = a["lo"] <= b["hi"] and b["lo"] <= a["hi"]
                    rows.append({"part": part, "backend": backend, "op": op, "payload": p,
                                 "with": a["ns"], "without": b["ns"],
                                 "ratio": a["ns"] / b["ns"], "noise": noise})
    return rows


def load_runs(root: pathlib.Path):
    runs = {}
    for bench in root.glob("**/new/benchmark.json"):
        est = bench.parent / "estimates.json"
        if not est.exists():
            continue
        b = json.loads(bench.read_text())
        e = json.loads(est.read_text())
        group = b.get("group_id")
        func = b.get("function_id")
        value = b.get("value_str")
        if group is None or func is None:
            continue
        med = e["median"]
        runs[(group, func, value)] = {
            "ns": med["point_estimate"],
            "lo": med["confidence_interval"]["lower_bound"],
            "hi": med["confidence_interval"]["upper_bound"],
        }
    return runs


def fmt_ns(ns: float) -> str:
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.1f} µs"
    return f"{ns:.0f} ns"


def verdict(kind_limit, time_ratio):
    """(text, status) for a sessionkit/other time ratio against a target."""
    if kind_limit is None:
        return "", None
    kind, limit = kind_limit
    if kind == "time":
        ok = time_ratio <= limit
        if ok:
            return f"met (≤ {limit:.2f}×)", True
        return f"missed by {100 * (time_ratio / limit - 1):.0f}% (target ≤ {limit:.2f}×)", False
    tput = 1 / time_ratio
    ok = tput >= limit
    if ok:
        return f"met (throughput ≥ {limit:.2f}×)", True
    return f"missed by {100 * (1 - tput / limit):.0f}% (target throughput ≥ {limit:.2f}×)", False


def group_order(g: str):
    order = ["memory", "cache", "redis", "cached_redis", "sqlite", "postgres", "mysql", "jwt"]
    backend, _, op = g.partition("/")
    ops = ["create", "load", "save", "delete", "load_c64", "save_c64",
           "encode", "verify", "verify_revocation"]
    return (order.index(backend) if backend in order else 99,
            ops.index(op) if op in ops else 99, g)


def build_rows(runs):
    """Comparison rows: one per (group, payload, other) where both exist."""
    groups = sorted({g for (g, _, _) in runs
                     if not g.startswith(("scale/", SECRETS + "/"))}, key=group_order)
    rows = []
    for g in groups:
        payloads = sorted({v for (gg, _, v) in runs if gg == g}, key=lambda p: (len(p or ""), p))
        for p in payloads:
            sk = runs.get((g, SK, p))
            if sk is None:
                continue
            for other, target in ((RAW, raw_target(g)), (TOWER, tower_target(g)),
                                  (TOWER_MOKA, tower_target(g))):
                o = runs.get((g, other, p))
                if o is None:
                    continue
                ratio = sk["ns"] / o["ns"]
                text, ok = verdict(target, ratio)
                rows.append({
                    "group": g, "payload": p, "other": other, "sk": sk["ns"],
                    "other_ns": o["ns"], "ratio": ratio, "target": text, "ok": ok,
                    "concurrent": g.endswith("_c64"),
                })
            subj = runs.get((g, SK_SUBJECT, p))
            raw = runs.get((g, RAW, p))
            if subj and raw:
                ratio = subj["ns"] / raw["ns"]
                rows.append({
                    "group": g, "payload": p, "other": RAW, "sk": subj["ns"],
                    "other_ns": raw["ns"], "ratio": ratio,
                    "target": "(with a subject: + subject-index update)", "ok": None,
                    "concurrent": False, "label": SK_SUBJECT,
                })
    return rows


def svg_chart(rows, path: pathlib.Path):
    """Horizontal bars of sessionkit/raw and sessionkit/tower-sessions time
    ratios (log scale); green = target met, red = missed, grey = none."""
    panels = [("sessionkit / raw (time ratio, lower is better)", [r for r in rows if r["other"] == RAW]),
              ("sessionkit / tower-sessions (time ratio, lower is better)",
               [r for r in rows if r["other"] in (TOWER, TOWER_MOKA)])]
    bar_h, gap, label_w, plot_w, pad = 14, 4, 330, 420, 20
    lo, hi = 0.05, 20.0
    x = lambda r: label_w + plot_w * (math.log10(max(lo, min(hi, r))) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))
    height = pad
    for _, rs in panels:
        height += 40 + len(rs) * (bar_h + gap) + 30
    width = label_w + plot_w + 120
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="DejaVu Sans, Arial, sans-serif" font-size="11">',
           f'<rect width="{width}" height="{height}" fill="white"/>']
    y = pad
    for title, rs in panels:
        out.append(f'<text x="10" y="{y + 14}" font-size="14" font-weight="bold">{html.escape(title)}</text>')
        lx = label_w + plot_w - 250
        for i, (c, t) in enumerate((("#2e9d4a", "target met"), ("#d0453a", "missed"), ("#8c8c8c", "no target"))):
            out.append(f'<rect x="{lx + i * 90}" y="{y + 4}" width="10" height="10" fill="{c}"/>')
            out.append(f'<text x="{lx + i * 90 + 14}" y="{y + 13}">{t}</text>')
        y += 30
        top = y
        for tick in (0.1, 0.25, 0.5, 1, 2, 4, 10):
            tx = x(tick)
            out.append(f'<line x1="{tx:.1f}" y1="{top - 4}" x2="{tx:.1f}" y2="{top + len(rs) * (bar_h + gap)}" '
                       f'stroke="{"#333" if tick == 1 else "#ddd"}" stroke-width="{1.5 if tick == 1 else 1}"/>')
            out.append(f'<text x="{tx:.1f}" y="{top + len(rs) * (bar_h + gap) + 12}" text-anchor="middle" fill="#555">{tick:g}×</text>')
        for r in rs:
            label = f'{r["group"]} {r["payload"]}'
            if r.get("label"):
                label += f' ({r["label"]})'
            elif r["other"] == TOWER_MOKA:
                label += " (vs MokaStore)"
            color = {True: "#2e9d4a", False: "#d0453a", None: "#8c8c8c"}[r["ok"]]
            x0, x1 = x(1.0), x(r["ratio"])
            bx, bw = min(x0, x1), max(1.0, abs(x1 - x0))
            out.append(f'<text x="{label_w - 6}" y="{y + bar_h - 3}" text-anchor="end">{html.escape(label)}</text>')
            out.append(f'<rect x="{bx:.1f}" y="{y}" width="{bw:.1f}" height="{bar_h}" fill="{color}"/>')
            out.append(f'<text x="{max(x0, x1) + 4:.1f}" y="{y + bar_h - 3}" fill="#222">{r["ratio"]:.2f}×</text>')
            y += bar_h + gap
        y += 30
    out.append("</svg>")
    path.write_text("\n".join(out) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--criterion", default="target/criterion")
    ap.add_argument("--env", default=None, help="JSON with machine and versions")
    ap.add_argument("--out", default="docs/benchmarks.md")
    ap.add_argument("--notes", default="benches/analysis.md",
                    help="hand-written analysis appended to the report, if present")
    args = ap.parse_args()
    root = pathlib.Path(args.criterion)
    runs = load_runs(root)
    if not runs:
        sys.exit(f"no criterion results under {root}")
    env = json.loads(pathlib.Path(args.env).read_text()) if args.env else {}
    extra = {}
    for f in (root / "sessionkit-extra").glob("*.json"):
        extra[f.stem] = json.loads(f.read_text())

    rows = build_rows(runs)
    out = pathlib.Path(args.out)
    svg = out.with_suffix(".svg")
    svg_chart(rows, svg)

    md = []
    w = md.append
    w("# Benchmarks")
    w("")
    w("Generated by `scripts/bench.sh` (do not edit by hand). Every number below comes from "
      "one run on one machine: sessionkit, the raw baselines and the tower-sessions stores were "
      "measured in the same run, back to back: for each operation and payload the "
      "implementations run one after the other, so the two sides of a ratio are measured "
      "seconds apart. Only the ratios are meant to carry over to other machines.")
    w("")
    w(f"Run: {env.get('date', dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'))}.")
    w("")
    w("## Machine and versions")
    w("")
    for k in ("cpu", "nproc", "ram", "kernel", "rustc", "profile", "criterion_settings", "load",
              "redis_server", "postgres_server", "mariadb_server", "sqlite"):
        if k in env:
            w(f"- **{k.replace('_', ' ')}**: {env[k]}")
    if env.get("crates"):
        w("- **crates**: " + ", ".join(f"{k} {v}" for k, v in sorted(env["crates"].items())))
    if env.get("note"):
        w("")
        w(env["note"])
    w("")
    w("## What is measured")
    w("")
    w("Each implementation does the same application-level job on the same session struct "
      "(`Sess` in `benches/common/mod.rs`: user, roles, CSRF token, preferences, a cart, padded "
      "to a ~200-byte or a 4 KiB encoding with the default payload codec):")
    w("")
    w("- **sessionkit**: `SessionManager<Sess>` over the store (`create(None, data)`, "
      "`load(ticket)` decoded to `Sess`, `save(&mut session)` with compare-and-swap, "
      "`destroy(ticket)`); idle extension on load is throttled, so a load never writes.")
    w("- **raw**: what a hand-written store does with the same client: redis `SET NX PXAT` / "
      "`GET` / `SET PXAT` / `DEL` of the encoded bytes on a `ConnectionManager` (the connection "
      "type `RedisStore` uses); sqlx running `SqlStore`'s own statements (from `SqlStore::sql`) "
      "on the same table through the same pool; moka `get` + decode / encode + `insert`; "
      "jsonwebtoken `encode` / `decode` with the same HS256 key, `kid` header and claims.")
    w("- **tower-sessions**: its stores' `SessionStore` (`MemoryStore` 0.15; `MokaStore`, "
      "`RedisStore` (fred), `PostgresStore` (sqlx 0.8), `MySqlStore` (sqlx 0.8) and "
      "`CachingSessionStore` on "
      "tower-sessions-core 0.14, which their latest releases use), with the struct stored as a "
      "`serde_json::Value` under one key, as `Session::insert` / `Session::get` do. Its SQLite "
      "store cannot be linked beside sqlx 0.9 (libsqlite3-sys links once), so SQLite has no "
      "tower-sessions row.")
    w("- **_c64** rows: 64 tasks, each with its own session, doing their share of the "
      "operations; the time is wall time per operation, so throughput is its inverse.")
    w("- Times are criterion's median time per operation; a ratio is sessionkit's time over "
      "the other's (below 1 = sessionkit faster).")
    w("")
    w("![sessionkit / raw and sessionkit / tower-sessions](benchmarks.svg)")
    w("")

    def table(title, sel):
        rs = [r for r in rows if sel(r)]
        if not rs:
            return
        w(f"## {title}")
        w("")
        w("| operation | payload | sessionkit | other | other's time | ratio | target |")
        w("|---|---|---:|---|---:|---:|---|")
        for r in rs:
            who = r.get("label") or SK
            name = r["group"] if who == SK else f'{r["group"]} ({who})'
            ratio = f'{r["ratio"]:.2f}×'
            if r["concurrent"]:
                ratio += f' (throughput {1 / r["ratio"]:.2f}×)'
            w(f'| {name} | {r["payload"]} | {fmt_ns(r["sk"])} | {r["other"]} | '
              f'{fmt_ns(r["other_ns"])} | {ratio} | {r["target"]} |')
        w("")

    table("sessionkit / raw", lambda r: r["other"] == RAW)
    table("sessionkit / tower-sessions", lambda r: r["other"] in (TOWER, TOWER_MOKA))

    # Cache hit vs RedisStore load.
    hit_vs = []
    for p in ("200B", "4KiB"):
        hit = runs.get(("cached_redis/load", SK, p)) or runs.get(("cache/load", SK, p))
        rl = runs.get(("redis/load", SK, p))
        if hit and rl:
            hit_vs.append((p, hit["ns"], rl["ns"], rl["ns"] / hit["ns"]))
    if hit_vs:
        w("## Cache hit vs RedisStore load")
        w("")
        w("| payload | CachedStore hit | RedisStore load | hit is faster by | target (≥ 50×) |")
        w("|---|---:|---:|---:|---|")
        for p, h, r, x in hit_vs:
            w(f"| {p} | {fmt_ns(h)} | {fmt_ns(r)} | {x:.0f}× | {'met' if x >= 50 else 'missed'} |")
        w("")

    # Scale.
    scale = {}
    for (g, f, v), e in runs.items():
        if g == "scale/load":
            scale.setdefault(f, {})[int(v)] = e["ns"]
    if scale:
        w("## Load latency against the number of live sessions")
        w("")
        sizes = sorted({n for d in scale.values() for n in d})
        w("| backend | " + " | ".join(f"{n:,} live" for n in sizes) + " | largest / smallest |")
        w("|---|" + "---:|" * len(sizes) + "---|")
        for backend, d in sorted(scale.items()):
            cells = [fmt_ns(d[n]) if n in d else "–" for n in sizes]
            have = [d[n] for n in sizes if n in d]
            growth = have[-1] / have[0] if len(have) > 1 else 1.0
            flat = "flat" if growth <= 1.5 else "grows"
            w(f"| {backend} | " + " | ".join(cells) + f" | {growth:.2f}× ({flat}) |")
        w("")
        w("200-byte payload; filler sessions are inserted in batches (Redis: pipelined `SET … PXAT` "
          "under the store's prefix; SQLite: multi-row `INSERT` into the store's table; "
          "MemoryStore: `create` through the store). \"flat\" means the largest size costs at "
          "most 1.5× the smallest.")
        w("")

    gc = extra.get("delete_expired")
    if gc:
        w("## `delete_expired` against the number of expired rows")
        w("")
        w("| backend | live rows | expired rows | time | per expired row |")
        w("|---|---:|---:|---:|---:|")
        for p in gc:
            w(f'| {p["backend"]} | {p["live"]:,} | {p["expired"]:,} | {fmt_ns(p["ns"])} | '
              f'{fmt_ns(p["ns"] / p["expired"])} |')
        w("")
        w("Median of 3 runs per point, each on freshly inserted expired rows, with the live "
          "rows fixed. The cost must follow the expired rows (constant per expired row) and "
          "not the live ones.")
        w("")

    fp = extra.get("footprint")
    if fp:
        names = {"memory_store": "MemoryStore", "cached_store": "CachedStore (entries only)",
                 "raw_moka": "raw moka `Cache<SessionId, Bytes>`", "tower_moka": "tower-sessions MokaStore"}
        w("## Memory per session")
        w("")
        w("| store | payload | bytes per session | payload bytes |")
        w("|---|---|---:|---:|")
        for p in fp:
            size = "~200" if p["payload"] == "200B" else "4096"
            w(f'| {names.get(p["case"], p["case"])} | {p["payload"]} | {p["bytes_per_session"]:,.0f} | {size} |')
        w("")
        w(f"Method: each case runs in a fresh process, which reads its resident set size "
          f"(`/proc/self/statm`), inserts N = {fp[0]['n']:,} sessions with their own payload "
          "allocations, lets moka finish its pending work and reads the RSS again; the table "
          "shows (after − before) / N: payload, record, key, moka's entry and bookkeeping, "
          "allocator overhead. The CachedStore runs over a backend that keeps nothing, so "
          "only the cache is counted. tower-sessions' MokaStore keeps the decoded "
          "`HashMap<String, serde_json::Value>` rather than bytes.")
        w("")

    sec = secrets_rows(runs)
    if sec:
        w("## The cost of protecting secrets at rest")
        w("")
        w("Each part is measured against the same manager without it, back to back in the "
          "same run (`benches/secrets.rs`, same `Sess` payloads); a ratio is the time with "
          "the part over the time without it, and the difference is what it adds per "
          "operation. A difference marked *within noise* is one where the confidence "
          "intervals of the two medians overlap: the run cannot tell the two apart, so read "
          "it as no measurable cost (on Redis, where a round trip varies by tens of µs on "
          "this shared machine, that is the expected reading for anything that costs less "
          "than a few µs of CPU). The CPU a part adds is the same on every backend: the "
          "MemoryStore rows measure it; the Redis rows put it beside a round trip.")
        w("")
        w("- **ID hashing (default)**: the store keys each record by SHA-256 of the ticket's "
          "ID (truncated to 128 bits), so a copy of the store holds no working ticket; "
          "*without* is the same manager with `.hash_ids(false)`. One hash per create, load "
          "and delete (a save writes to the stored ID the load found, so it hashes "
          "nothing): visible on `MemoryStore`, where an operation costs a few µs, lost in "
          "the round trip on Redis. **with `id_hash_key`** mixes a deployment key into the hash "
          "(one more SHA-256 block, the same in every operation: measured on loads).")
        w("- **payload encryption**: `.encrypt_payloads(PayloadKeys)` seals each payload with "
          "XChaCha20-Poly1305 on create and save (a fresh nonce, the session ID and version "
          "as associated data; 41 bytes more per payload) and opens it on load; *without* is "
          "the same (hashed-ID) manager without keys. A create seals once (the check that a "
          "new payload reads back runs on the plain encoding, before sealing). A delete never "
          "touches the payload, so it has no row.")
        w("- **stateless tokens**: a stateless `SessionManager` with `PasetoCodec` "
          "(PASETO v4.local: the claims and data encrypted) against one with `JwtCodec` "
          "(HS256: signed, readable by the client), same claims and data; create encrypts or "
          "signs, load decrypts or verifies, checks the revocation list (answered by a "
          "`CachedStore`) and decodes the data. The raw jsonwebtoken rows (encode / decode "
          "of the same claims with the data typed, no revocation check) are the floor: "
          "what a hand-written JWT costs.")
        w("")
        w("| part | backend | operation | payload | with | without | ratio | difference |")
        w("|---|---|---|---|---:|---:|---:|---:|")
        for r in sec:
            diff = r["with"] - r["without"]
            sign = "+" if diff >= 0 else "−"
            noise = " (within noise)" if r["noise"] else ""
            w(f'| {r["part"]} | {r["backend"]} | {r["op"]} | {r["payload"]} | '
              f'{fmt_ns(r["with"])} | {fmt_ns(r["without"])} | {r["ratio"]:.2f}× | '
              f'{sign}{fmt_ns(abs(diff))}{noise} |')
        w("")

    missed = [r for r in rows if r["ok"] is False]
    w("## Targets missed")
    w("")
    if not missed:
        w("None.")
    else:
        for r in missed:
            w(f'- {r["group"]} {r["payload"]} vs {r["other"]}: {r["ratio"]:.2f}× — {r["target"]}')
    w("")
    notes = pathlib.Path(args.notes)
    if notes.exists():
        w(notes.read_text().rstrip())
        w("")
    out.write_text("\n".join(md))
    print(f"wrote {out} and {svg} ({len(rows)} comparisons, {len(missed)} targets missed)")


if __name__ == "__main__":
    main()
