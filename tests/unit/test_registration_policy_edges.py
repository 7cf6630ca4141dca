"""The registration policy's edges (server/eft_server/registration_policy.py): filled in
from the mutation run's survivors."""
