"""CPU time of the kink analysis of a small CNN (verigrad.kinks): certified crossing tests of the
full finite-difference gradient and the set of valid gradients at pooling ties.

Run: ``python3 benchmarks/kinks_cnn.py``.  Uses ``cases/small-cnn.toml`` (conv2d -> relu ->
max_pool2d -> linear -> cross-entropy: 2048 relu sites, 256 pooling windows) and the same network
with ``b1 = -1`` and smaller kernels, whose point leaves most pooling windows all zero after the
relu (exact ties: 1660 tied entries).  Prints one row per step, CPU seconds and the target:

* ``recommend_steps`` + ``fd_crossings`` at the recommended steps, central, both dtypes
  (before: over 150 s; target 10 s);
* ``kink_analysis`` (the subgradient set) at the dead-window point, both dtypes
  (before: about 100 s per dtype; target 10 s).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _cpu(f):
    t = time.process_time()
    out = f()
    return time.process_time() - t, out


def main(argv: list[str]) -> int:
    import verigrad as vg
    from verigrad.casefile.loader import point_in_dtype
    from verigrad.engine.truth import certify
    from verigrad.kinks import fd_crossings, kink_analysis, recommend_steps
    from verigrad.spec import Dtype

    text = (ROOT / "cases" / "small-cnn.toml").read_text()
    dead = text.replace("b1 = { shape = [4], value = 1.0 }", "b1 = { shape = [4], value = -1.0 }")
    dead = dead.replace('init = "normal(0, 0.3)"', 'init = "normal(0, 0.2)"')
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, body in (("small-cnn", text), ("small-cnn, dead windows", dead)):
            path = Path(tmp) / "case.toml"
            path.write_text(body)
            (Path(tmp) / "impl").mkdir(exist_ok=True)
            m = vg.compile_case(vg.load_case(path))

            def steps():
                for dt in (Dtype.FLOAT32, Dtype.FLOAT64):
                    rec = recommend_steps(m, dtype=dt, scheme="central")
                    fd_crossings(m, dtype=dt, scheme="central", step=rec.steps)

            def analysis():
                for dt in (Dtype.FLOAT32, Dtype.FLOAT64):
                    kink_analysis(m, certify(m, point_in_dtype(m.point, dt), dt))

            t1, _ = _cpu(steps)
            t2, _ = _cpu(analysis)
            rows.append((label, "recommend_steps + fd_crossings, central, f32+f64", t1, 10.0))
            rows.append((label, "kink_analysis (certify + subgradient set), f32+f64", t2, 10.0))
    print(f"{'case':<26} {'step':<54} {'CPU s':>7} {'target':>7}  verdict")
    for label, what, t, target in rows:
        print(f"{label:<26} {what:<54} {t:7.2f} {target:7.1f}  {'ok' if t <= target else 'MISS'}")
    return 0 if all(t <= target for *_, t, target in rows) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
