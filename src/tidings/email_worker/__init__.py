"""email worker: consumes email.queue, renders and sends email.

Not named ``email``: that is the standard library's package.
"""
