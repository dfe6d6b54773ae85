"""What MLflow executes to load a served ganzoo generator ("models from code"): the model is this
import, not a pickled object, so loading runs no stored code beyond the installed package."""

import mlflow

from ganzoo.tracking.pyfunc import GeneratorModel

mlflow.models.set_model(GeneratorModel())
