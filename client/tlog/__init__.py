"""Transparency-log formats: the RFC 9162 Merkle tree and C2SP signed notes.

Pure code over bytes and text (hashlib and the ``cryptography`` package's Ed25519), no
database, no HTTP: the server, ``ruis verify``, ``ruis witness`` and the client share it.
"""
