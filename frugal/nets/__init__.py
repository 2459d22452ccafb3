"""Network building blocks shared by the agents."""
