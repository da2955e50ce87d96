"""The pure side of the board: the events it follows, how each one changes the model, how reads are assembled."""
