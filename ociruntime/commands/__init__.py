"""One module per lifecycle verb, each told in the words of runtime.md."""
