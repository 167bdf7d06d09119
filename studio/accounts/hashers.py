"""The password hasher: Django's Argon2 at Django's own parameters, at most one hash per core
at a time in a process.

Argon2id is the hasher Django's documentation and OWASP recommend first: memory-hard (each
hash fills 100 MiB twice), so a GPU guessing passwords gains far less on it than on PBKDF2,
and on this project's 2-core benchmark machine it costs about 0.18 s of CPU per log-in
where PBKDF2 at Django's 1,000,000 iterations costs 0.30 s. Its memory is the price: a
process hashing many passwords at once would hold 100 MiB for each, so hashes beyond one
per core wait for a turn (more at once would finish none sooner).
"""

import os
import threading

from django.contrib.auth import hashers

HASHES_AT_ONCE = os.cpu_count() or 1
_hashing = threading.BoundedSemaphore(HASHES_AT_ONCE)


class Argon2PasswordHasher(hashers.Argon2PasswordHasher):
    def encode(self, password: str, salt: str) -> str:
        with _hashing:
            return super().encode(password, salt)

    def verify(self, password: str, encoded: str) -> bool:
        with _hashing:
            return super().verify(password, encoded)
