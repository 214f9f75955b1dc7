"""Models: the multi-modal base (:mod:`.abstract_recommender`), the building blocks
(:mod:`.layers`), the total-correlation losses (:mod:`.loss`) and one file per model
(:mod:`.general_recommender`), as RecBole lays out its own."""
