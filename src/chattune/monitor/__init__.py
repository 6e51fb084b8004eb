"""Watching a run while it trains: generate predictions on fixed prompts, score them, act on the scores.

generate.py samples predictions, score.py turns them into scores and flags (pure, stdlib only, so
`chattune score` and the report never import torch), callback.py runs both every few steps. This
package file imports nothing, so importing score.py alone stays light.
"""
