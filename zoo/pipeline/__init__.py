"""The pipeline: plan, build, isolated workers, release, merge, golden kit, check, verify, cards, lock."""
