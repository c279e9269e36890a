"""The lake's column and partition names (docs/contract.md, "Data lake"), written once."""

ROW_ID = "row_id"  # unique within a model, in scored batches and label files
PREDICTION = "prediction"  # float64 in a scored batch; also a column of the registry's reference
SCORED_AT = "scored_at"
MODEL_VERSION = "model_version"
BATCH_DATE = "batch_date"  # the scored batches' partition key
ARRIVAL_DATE = "arrival_date"  # the labels' partition key
