"""Built-in problems: losses over one flat parameter vector, with known structure."""
