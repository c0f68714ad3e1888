"""Shared test support: the app served in-process (:mod:`tests.support.inprocess`) and the
set-up and read helpers the API tests share (:mod:`tests.support.api`)."""
