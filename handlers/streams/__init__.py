"""Stream sessions (seed 000): live clip markers, the streamer's dashboard, the viewer's page."""
