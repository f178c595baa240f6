from faltung.layers.core.dense import Dense
