"""The states of a payment transaction, without the database: what the command line can list and check
before anything heavier is imported (see DESIGN: INITIATED → OTP_SENT → SUCCESS | FAILED, plus PENDING,
CANCELLED, EXPIRED)."""

INITIATED, OTP_SENT, SUCCESS, FAILED = "INITIATED", "OTP_SENT", "SUCCESS", "FAILED"
PENDING, CANCELLED, EXPIRED = "PENDING", "CANCELLED", "EXPIRED"
STATUSES = (INITIATED, OTP_SENT, SUCCESS, FAILED, PENDING, CANCELLED, EXPIRED)
FINAL = frozenset({SUCCESS, FAILED, CANCELLED, EXPIRED})
