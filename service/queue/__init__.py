"""The grading queue: claims, leases, workers, heartbeats and the Celery carrier."""
