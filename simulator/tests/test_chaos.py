"""Seeded chaos: the same seed and sequence of pushes give the same perturbations."""

from __future__ import annotations

from simulator.scenarios import CHAOS_KINDS, Plan, apply_chaos
from simulator.tests.helpers import wait_until


def test_apply_chaos_is_a_pure_function_of_seed_and_index():
    def kinds(seed):
        out = []
        for index in range(40):
            plan = Plan()
            apply_chaos(plan, rate=0.5, seed=seed, index=index, base_delay=0.1)
            out.append(plan.chaos["kind"] if plan.chaos else None)
        return out

    assert kinds(42) == kinds(42)
    assert kinds(42) != kinds(43)
    assert set(kinds(42)) - {None} <= set(CHAOS_KINDS)
    assert 5 < sum(k is not None for k in kinds(42)) < 35


def test_rate_zero_and_fixed_delivery_are_untouched():
    plan = Plan()
    apply_chaos(plan, rate=0.0, seed=1, index=0, base_delay=0.1)
    assert plan == Plan()
    fixed = Plan(fixed_delivery=True)
    apply_chaos(fixed, rate=1.0, seed=1, index=0, base_delay=0.1)
    assert fixed.chaos is None
    every = Plan()
    apply_chaos(every, rate=1.0, seed=1, index=0, base_delay=0.1)
    assert every.chaos is not None


def _run(sim, count=14):
    for _ in range(count):
        sim.accepted()
    records = sim.http.get("/simulator/transactions").json()["transactions"]
    return [(r["chaos"] or {}).get("kind") for r in records]


def test_chaos_run_repeats_from_its_seed(make_sim):
    sim = make_sim(chaos_rate=0.6, seed=4242, late_delay=0.1)
    first = _run(sim)
    assert any(first) and set(first) - {None} <= set(CHAOS_KINDS)
    sim.http.post("/simulator/reset", json={})
    assert _run(sim) == first  # same seed, same sequence: same chaos
    other = make_sim(chaos_rate=0.6, seed=4242, late_delay=0.1)
    assert _run(other) == first  # another process started with the same seed


def test_chaos_endpoint_sets_rate_and_seed(sim):
    assert sim.http.get("/simulator/chaos").json() == {"rate": 0.0, "seed": 1234}
    assert sim.http.post("/simulator/chaos", json={"rate": 1, "seed": 7}).json() == {
        "rate": 1.0,
        "seed": 7,
    }
    first = _run(sim, 6)
    assert all(first)
    sim.http.post("/simulator/reset", json={})
    sim.http.post("/simulator/chaos", json={"seed": 7})
    assert _run(sim, 6) == first
    listing = sim.http.get("/simulator/transactions").json()
    assert listing["chaos"] == {"rate": 1.0, "seed": 7}
    assert listing["transactions"][0]["chaos"]["seed"] == 7
    bad = sim.http.post("/simulator/chaos", json={"rate": 3})
    assert bad.status_code == 400


def test_chaos_perturbations_are_carried_out(make_sim, receiver):
    sim = make_sim(chaos_rate=1.0, seed=99, late_delay=0.1)
    for _ in range(12):
        sim.accepted()

    def delivered() -> list[dict] | None:
        """The transactions once every expected callback was sent (a busy machine is slow)."""
        records = sim.http.get("/simulator/transactions").json()["transactions"]
        expected = {"no_delivery": 0, "empty": 2, "concurrent": 2}
        for record in records:
            chaos = record["chaos"]
            count = chaos.get("deliveries") if chaos["kind"] == "duplicate" else None
            if len(record["callbacks"]) < (count or expected.get(chaos["kind"], 1)):
                return None
        return records

    records = wait_until(delivered)
    seen = set()
    for record in records:
        chaos = record["chaos"]
        seen.add(chaos["kind"])
        sent = record["callbacks"]
        if chaos["kind"] == "no_delivery":
            assert sent == []
        elif chaos["kind"] == "duplicate":
            assert len(sent) == chaos["deliveries"]
        elif chaos["kind"] == "empty":
            assert [a["kind"] for a in sent] == ["empty", "normal"]
        elif chaos["kind"] == "concurrent":
            assert len(sent) == 2
        else:  # late / delay: one normal callback, after the answer
            assert len(sent) == 1 and sent[0]["started_at"] >= record["answer_at"]
    assert len(seen) >= 4


def test_scripted_pushes_are_never_perturbed(make_sim):
    sim = make_sim(chaos_rate=1.0)
    sim.script(phone="254722000444")
    sim.accepted("254722000444")
    (record,) = sim.http.get("/simulator/transactions").json()["transactions"]
    assert record["chaos"] is None and record["source"] == "script"
