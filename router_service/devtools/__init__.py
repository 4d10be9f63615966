"""The demo agents (``router-service demo-agents``): development and test stand-ins for agents."""
