"""Training components for mmengine runners (imported on demand, never by ``import mmhiri``)."""
