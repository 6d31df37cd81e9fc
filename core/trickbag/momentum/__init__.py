"""Momentum time constants T = -1/ln(beta): the maths (``constants``) and the table (``report``)."""
