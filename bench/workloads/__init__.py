"""Workloads: what a case runs (model, batch, loss, optimizer, data) and the step each phase times."""
