"""Transparency-log formats: the RFC 9162 Merkle tree and C2SP signed notes.

Pure code over bytes and text (hashlib; the ``cryptography`` package's Ed25519, imported
only to sign or verify), no database, no HTTP: the server, ``ruis verify``, ``ruis
witness`` and the client share it. It ships with the client (``ruis-client``).
"""
