"""Training and per-item loop plumbing shared by all stages: seeding, checkpoints, schedules, sampling."""
