"""Access: users and API tokens (IAM's part of Cumulo).

Public pieces: ``cumulo.access.users.user_names`` for other services, ``tokens`` for the
server's auth check, ``api``, ``cli`` and ``sdk`` for the three surfaces.
"""
