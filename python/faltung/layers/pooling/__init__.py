from faltung.layers.pooling.average_pooling import AveragePooling1D, AveragePooling2D
from faltung.layers.pooling.global_pooling import (GlobalAveragePooling1D, GlobalAveragePooling2D,
                                                   GlobalAvgPool1D, GlobalAvgPool2D, GlobalMaxPool1D,
                                                   GlobalMaxPool2D, GlobalMaxPooling1D, GlobalMaxPooling2D)
from faltung.layers.pooling.max_pooling import MaxPooling1D, MaxPooling2D
from faltung.layers.pooling.unpooling import AverageUnpooling2D, MaxUnpooling2D

# Keras aliases
MaxPool1D, MaxPool2D = MaxPooling1D, MaxPooling2D
AvgPool1D, AvgPool2D = AveragePooling1D, AveragePooling2D
