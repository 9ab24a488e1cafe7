"""URL map of /dicomweb/ (PS3.18 resources). Each module owns its views."""

from django.urls import path

from archive.dicomweb import qido, stow, wado
from archive.dicomweb.dispatch import by_method

app_name = "dicomweb"

urlpatterns = [
    # The same resource answers QIDO/WADO on GET and STOW on POST (PS3.18 10.4-10.6).
    path("studies", by_method(GET=qido.search_studies, POST=stow.store), name="studies"),
    path("studies/<str:study>", by_method(GET=wado.retrieve_study, POST=stow.store_study), name="study"),
    path("studies/<str:study>/series", qido.search_series_in_study, name="qido-study-series"),
    path("series", qido.search_series, name="qido-series"),
    path("studies/<str:study>/series/<str:series>/instances", qido.search_instances_in_series, name="qido-series-instances"),
    path("studies/<str:study>/instances", qido.search_instances_in_study, name="qido-study-instances"),
    path("instances", qido.search_instances, name="qido-instances"),
    # WADO-RS (PS3.18 10.4)
    path("studies/<str:study>/metadata", wado.study_metadata, name="wado-study-metadata"),
    path("studies/<str:study>/series/<str:series>", wado.retrieve_series, name="wado-series"),
    path("studies/<str:study>/series/<str:series>/metadata", wado.series_metadata, name="wado-series-metadata"),
    path("studies/<str:study>/series/<str:series>/instances/<str:instance>", wado.retrieve_instance, name="wado-instance"),
    path("studies/<str:study>/series/<str:series>/instances/<str:instance>/metadata", wado.instance_metadata, name="wado-instance-metadata"),
    path("studies/<str:study>/series/<str:series>/instances/<str:instance>/frames/<str:frames>", wado.retrieve_frames, name="wado-frames"),
    path("studies/<str:study>/series/<str:series>/instances/<str:instance>/bulkdata/<str:tag>", wado.retrieve_bulkdata, name="wado-bulkdata"),
]
