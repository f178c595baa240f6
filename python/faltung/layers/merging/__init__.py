"""Merging layers (Keras's keras/src/layers/merging): elementwise merges, Concatenate, Dot."""
from faltung.layers.merging.base_merge import Merge
from faltung.layers.merging.add import Add, add
from faltung.layers.merging.subtract import Subtract, subtract
from faltung.layers.merging.multiply import Multiply, multiply
from faltung.layers.merging.average import Average, average
from faltung.layers.merging.maximum import Maximum, maximum
from faltung.layers.merging.minimum import Minimum, minimum
from faltung.layers.merging.concatenate import Concatenate, concatenate
from faltung.layers.merging.dot import Dot, dot
