"""Launchers that hand a sweep's jobs to a cluster engine (Ray; SLURM through submitit)."""
