"""ethnicmer: micro-expression recognition research that takes ethnicity seriously.

Implements and extends Khor, Li, Jiang and Zhao, *Is Micro-expression Ethnic
Leaning?* (ICME Workshops 2025): an ethnicity-annotated CASME II + SAMM composite
database, onset→apex optical-flow images, the prima facie study, the LOSO benchmark
and activation maps per ethnicity group.
"""

__version__ = "0.1.0"
