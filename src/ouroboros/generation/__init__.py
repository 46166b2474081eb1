"""Generation backends: how a checkpoint turns prompts into synthetic text."""
