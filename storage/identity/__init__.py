"""Identity storage: user profiles, device refresh families, revocations."""
