"""Scorecard engine: rules over utterances → item points with evidence → session score."""
