"""Every number the engine is tuned by, in one frozen dataclass.

``matching.solve(problem, tuning=SolverTuning(slot_fraction=0.5))`` (or
``dataclasses.replace(DEFAULT_TUNING, ...)``) runs the engine with other values, e.g. from
a benchmark.  Times are seconds; "share" is a component's part of the time limit;
"dtime" is CP-SAT's deterministic time.  Why each value is what it is, and what was
measured, is in ``matching/NOTES.md`` (section 4).  Lower floors on time limits
(0.02 / 0.05 / 0.1 s) are guards against zero or negative limits, not tuning, and stay in
the code.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SolverTuning:
    # ---- size of the model (compiled.py)
    # options kept per operation: its cheapest by cost (None = every eligible machine) ...
    max_options: int | None = 32
    local_options: int = 4  # ... plus this many of the cheapest in the order's own cluster
    max_model_mb: float | None = 1536.0  # estimated memory above which a solve refuses

    # ---- time split of a solve (engine/orchestrator.py)
    greedy_fraction: float = 0.3  # greedy orders after the first only within this part
    greedy_min_s: float = 2.0  # ... or this long; the final repair stops this long after the end
    budget_fraction: float = 0.9  # part of the time left after the greedy handed to components
    reserve_s: float = 0.05  # wall time kept for the final repair: fixed part
    reserve_fraction: float = 0.1  # ... plus at most this part of the time limit,
    reserve_s_per_job: float = 2e-4  # ... growing by this per job
    reserve_s_per_option: float = 4e-6  # ... and by this per option
    parallel_components: bool = True  # non-deterministic mode: components side by side

    # ---- deterministic mode (engine/orchestrator.py, engine/common.py)
    dtime_per_second: float = 1.0  # CP-SAT dtime units granted per second of share
    # the wall-clock deadline is the time limit times this. Above 1 (tests that must repeat
    # exactly on a loaded machine), the time shares also come from the limit alone, not from
    # the time the greedy left, so the clock decides nothing; runs may then take longer
    wall_factor: float = 1.0
    parallel_search_speed: float = 0.65  # one thread's speed a CP-SAT search keeps, 2+ threads
    parallel_lns_speed: float = 0.7  # the same for LNS steps
    wall_fair_min: float = 0.25  # least part of the time left a component's wall net allows
    wall_fair_slack: float = 1.5  # slack of that net over the component's fair part
    min_solve_s: float = 0.02  # wall time left below which a CP-SAT search is not started

    # ---- slot model (engine/slots.py)
    slot_fraction: float = 0.3  # part of a slot component's share for the slot model
    slot_wall_fraction: float = 0.75  # slot phase: at most this part of the wall net
    slot_wall_factor: float = 3.0  # deterministic: slot phase's wall net, times its share
    slot_setup_s_per_option: float = 2.5e-4  # charge per option for work outside CP-SAT
    slot_lp_fraction: float = 0.75  # of the slot model's wall time, at most this for its LP
    mip_bound_fraction: float = 0.3  # part of the slot model's time for SCIP's 0-1 solve
    mip_bound_min_s: float = 0.3  # least SCIP time worth starting it for
    mip_bound_wall_fraction: float = 0.25  # ... and at most this part of the wall left
    exact_sequence_up_to: int = 6  # in-slot sequencing tries every order up to this many
    window_points: int = 12  # checkpoints per slot for the release/deadline window rows
    chunk_options: int = 25_000  # above this many options: time slices or LNS from greedy
    chunk_search_fraction: float = 0.75  # time slices: part of the share for their searches
    chunk_lp_fraction: float = 0.25  # time slices: part of share and wall for the LP bound
    chunk_lp_min_s: float = 1.0  # ... but at least this much of the share

    # ---- knapsack-like components, e.g. GAP (engine/knapsack.py)
    knapsack_mip_fraction: float = 0.5  # part of the share (and wall) for SCIP
    knapsack_mip_grace_s: float = 1.0  # SCIP's grace to finish a proof, at most this,
    knapsack_mip_grace_fraction: float = 0.3  # ... and this part of the share

    # ---- multi-operation orders and makespan mode (engine/orders.py)
    order_lns: bool = True  # after the interval model, LNS over whole orders
    order_model_fraction: float = 0.4  # part of the share for the full interval model
    order_lp_fraction: float = 0.15  # part of share and wall for the chained LP bound

    # ---- LNS on single-operation components (engine/lns.py)
    lns_start: int = 30  # jobs freed per step at first
    lns_min: int = 8  # ... never fewer
    lns_max: int = 120  # ... never more
    lns_grow: int = 2  # ... more after a step solved to optimality
    lns_shrink: int = 3  # ... fewer after one that was not
    lns_unplaced: float = 0.35  # share of steps around an unplaced job (while one is left)
    lns_costly: float = 0.3  # otherwise, share around a costly job
    lns_band: float = 0.6  # costly + band: steps on a band of time across all machines
    lns_step_dtime: float = 0.005  # dtime charged per step besides CP-SAT's own
    lns_var_dtime: float = 3.2e-4  # ... and per interval of the step's model
    lns_step_limit: float = 0.05  # dtime limit of one step's CP-SAT search
    lns_step_wall_factor: float = 3.0  # non-deterministic: a step's wall limit, times that
    lns_wall_margin_s: float = 0.05  # no step starts this close to the wall-clock end
    lns_unplaced_machines: tuple[int, int] = (2, 5)  # machines around an unplaced job
    lns_unplaced_window_min: int = 4 * 1440  # its time window counted at most this long
    lns_regret_pool: int = 20  # costly jobs: chosen among this many of the dearest
    lns_cheaper_machines: tuple[int, int] = (1, 4)  # ... with this many cheaper machines
    lns_related_pool: int = 8  # related machines: taken among this many sharing most jobs
    lns_related_machines: tuple[int, int] = (1, 4)  # ... this many of them
    lns_center_on_job: float = 0.5  # related machines: chance to centre on a placed job
    lns_waiting_min: int = 4  # unplaced jobs freed with a step: at least this many,
    lns_waiting_divisor: int = 3  # ... or the step's size divided by this

    # ---- LNS over whole orders (engine/lns.py)
    order_lns_start: int = 6  # orders freed per step at first
    order_lns_min: int = 2  # ... never fewer
    order_lns_max: int = 24  # ... never more
    order_lns_grow: int = 1  # ... more after an optimal step
    order_lns_shrink: int = 1  # ... fewer after one that was not
    order_lns_unplaced: float = 0.6  # share of steps around an unplaced order
    order_lns_machines: tuple[int, int] = (2, 6)  # machines whose orders are freed with it
    order_lns_step_dtime: float = 0.04  # dtime charged per step besides CP-SAT's own
    order_lns_var_dtime: float = 2e-5  # ... and per interval
    order_lns_step_limit: float = 0.1  # dtime limit of one step's CP-SAT search

    # ---- bounds (bound.py)
    lp_build_s_per_entry: float = 5e-6  # time to build the LP per slot entry


DEFAULT_TUNING = SolverTuning()
