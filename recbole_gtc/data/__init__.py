from recbole_gtc.data.dataset import MultiModalDataset
from recbole_gtc.data.utils import create_dataset, data_preparation

__all__ = ["MultiModalDataset", "create_dataset", "data_preparation"]
