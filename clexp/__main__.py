"""`python -m clexp` is the same as the `clexp` console script."""

from clexp.train import main

if __name__ == "__main__":
    main()
