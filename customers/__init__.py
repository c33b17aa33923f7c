"""The context engine: who the customer is and what they are trying to do right now."""
