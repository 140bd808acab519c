"""Interfaces: the `ridgerider` command line (and, with the API issue, HTTP)."""
