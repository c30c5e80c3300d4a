"""The backbones of this plugin: modality input adapters around one transformer trunk.

A text ``transformer`` backbone with family ``bert`` is the trunk (its token embedding is the text
adapter); ``trunk_image`` (:mod:`.image`: patch embedding) and ``trunk_audio`` (:mod:`.audio`:
log-mel front end) put their own input layers in front of the trunk's ``BertEncoder`` layers and
share them (:mod:`.trunk`). Without ``trunk`` each adapter builds layers of its own: the same model
with separate backbones. Each task keeps its own heads.

Imports nothing: ``options`` is torch-free, the other modules are imported by the factories.
"""
