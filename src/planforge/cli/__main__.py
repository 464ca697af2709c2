"""`python -m planforge.cli`: the same as the `planforge` console script."""

from planforge.cli import main

main()
