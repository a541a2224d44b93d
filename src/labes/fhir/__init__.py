"""The FHIR R4 facade (`/fhir`): the registry, care sheets and e-prescriptions as FHIR resources.

`mapping`, `billing` and `medication` turn our rows into `fhir.resources` models (R4B) and FHIR requests
into our inputs; `outcomes` renders every error as an OperationOutcome; `routes` is HTTP only.
"""
