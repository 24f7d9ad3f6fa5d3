"""The grading queue: how a submitted notebook gets graded exactly once at a time.

**The run row is the job.** Submitting commits a ``GradingRun`` in state ``queued``
(``service.states.RunState``) in the same transaction as the submission; a regrade commits a new
run. There is no other job record: the database says what is waiting, who works on what, and
what came out.

**Claimed by compare-and-set** (``claims``). A worker claims a run with one ``UPDATE … SET
state = 'running', worker = me, attempts = attempts + 1 WHERE id = ? AND state = 'queued'``; the
database lets exactly one of any number of racing workers change the row, and the row count
tells each whether it won.

**Leased and renewed** (``leases``). A claim comes with a lease (``LEASE_SECONDS``) that a
background thread renews while the grader runs for minutes: a slow worker keeps renewing, a dead
one stops.

**Fenced on completion** (``grading``). The result is stored in one transaction that first
checks, row locked, that this worker still owns the run (``worker = me AND state =
'running'``). A worker that lost its lease (a long pause, a partition) and was replaced cannot
overwrite the result of the worker that took over: its result is dropped.

**Requeued after its worker dies, failed after max attempts** (``claims.requeue_expired``). A
run whose lease ran out goes back to ``queued``; after ``MAX_ATTEMPTS`` claims it is ``failed``
with the reason, so a notebook that kills its worker every time cannot stall the queue. A sandbox
error is retried the same way, unless it repeats the previous attempt's reason word for word
(then it is final: a deterministic failure holds a worker at most twice); what the student's
kernel does to the grader's runner is never a sandbox error (``grader/outcome.py``). Workers
requeue before they claim, and the ``janitor`` does so every 30 s in the service process in case
no worker is left to.

**GPUs are leased the same way** (``gpu_leases``). A worker of a host with GPUs (``GPUS``)
leases a free device by compare-and-set before it claims, renews it with the run's lease and
gives it back when the run ends (kept out of use while its memory is not free); one without
claims only the runs that can do without (a run's ``gpu``: ``required``, ``preferred``,
``none``). With Celery, runs requiring a GPU go on the ``gpu`` queue, the others on ``cpu``.

**One path, two carriers.** :func:`grading.take` claims, keeps the lease, grades and stores
under the fence; it is all either carrier calls:

- *embedded* (``embedded``, ``QUEUE=embedded``, one machine, no broker server): threads in the
  service (or ``flask worker`` processes) call ``take`` for the oldest queued run whenever they
  are woken (``wakeup``): in the service's own process ``dispatch.enqueue`` rings them after the
  commit; across processes, on PostgreSQL, the transaction that queues a run sends ``NOTIFY``
  (delivered at the commit, so no worker wakes before the row is visible) and each worker
  process listens (``LISTEN``). They still poll every second, the fallback for a lost notification
  and all a ``flask worker`` process on SQLite has (no message between processes there);
- *Celery* (``celery_worker``, ``QUEUE=celery``, Redis or RabbitMQ at scale): ``dispatch`` sends a
  message naming the run after the commit, and the task calls ``take`` for that run.

No idle waits: a run reaches an idle worker in milliseconds (``make bench``'s queue wait:
10-40 ms in the service's threads, a ``flask worker`` on PostgreSQL or Celery; a ``flask
worker`` on SQLite finds it at its next poll), and a running run's progress is on its row within
0.2 s of each cell (``progress``).

**Why the database stays the source of truth**, even with a broker. The pages and the API read
the run row, never the broker. Broker messages can be lost, duplicated or redelivered: they are
acknowledged only after the task returns (``acks_late``) and delivered again if the worker dies,
so delivery is at-least-once; the database claim turns that into one grading at a time (a second
delivery finds the run claimed or finished and is skipped; one that finds a lease that may belong
to a dead worker retries after it runs out). And a broker outage never loses a submission the
service acknowledged: the run is committed before the message is sent, and the janitor sends
again the runs that sit queued (``dispatch.resend_stale``).

**Similarity runs ride the same queue** (``similarity``). A ``SimilarityRun`` row is a job too:
claimed by compare-and-set, leased, computed outside any transaction, stored under the fence,
requeued by the janitor; an embedded worker takes one only when no grading run waits, and
Celery carries it as its own task on the ``cpu`` queue.

Modules: ``host`` (what a worker process holds, opened once by its carrier, and what one run
holds: ``GradingHost`` and its ``Seat``), ``claims`` (the row's SQL), ``leases``,
``gpu_leases`` (which run holds which GPU), ``progress`` (live progress on the row),
``grading`` (``take``), ``embedded``, ``wakeup`` (waking idle workers), ``celery_app``
(the broker settings, which ``dispatch`` sends through by task name), ``celery_worker`` (the
task), ``dispatch``, ``janitor``, ``heartbeats`` (which workers are alive, for the dashboard),
``state`` (the queue in numbers, read by the dashboard and ``/metrics``),
``similarity`` (a similarity run's claim, lease, fence and requeue), ``lti_sender`` (grade
passback's sender thread in each grading process: ``take`` only queues a
run's score for the LMS after its outcome is committed, never waits for the LMS).
"""
