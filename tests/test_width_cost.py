"""scripts/width_cost.py: the narrower configs it builds keep the architecture and a valid grouping."""

from distilface.student import StudentConfig, build_student

from scriptload import load_script


def test_narrower_keeps_groups_that_divide_and_hold_nine_channels():
    mod = load_script("width_cost")
    cfg = StudentConfig(channels=72, context_groups=8, future_ms=64.0)
    # 72 / 8 = 9 per group: kept; 36: 8 leaves 4.5, 4 leaves 9; 18: 2; 20: 5 divides but leaves 4 -> 2
    assert [mod.narrower(cfg, c).context_groups for c in (72, 36, 18, 20)] == [8, 4, 2, 2]
    n = mod.narrower(cfg, 36)
    assert n.channels == 36 and n.future_ms == 64.0 and n.arch == cfg.arch
    build_student(n)  # a valid student
