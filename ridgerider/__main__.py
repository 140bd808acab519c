"""`python -m ridgerider` runs the command line."""

from ridgerider.cli import app

app(prog_name="ridgerider")
