"""The local stack: the replay pipeline that runs the real functions on a laptop."""
