"""What happened, for people: the one-page run report (`clickscore report`) and the plots it
shares with the notebooks in `notebooks/`."""
