"""Weekly architecture check-ins: trigger maths, the run engine, the scheduler, `!checkin`."""
