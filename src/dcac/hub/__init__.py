"""The Hugging Face Hub: fetching runs and pre-trained weights into the Hub cache (``download``), and
publishing a run with its model card (``upload``, ``model_card``)."""
