/* Starts Swagger UI (/docs) or ReDoc (/redoc) on the local OpenAPI document, from this
   file rather than an inline script, so the page's Content-Security-Policy holds. */
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", function () {
    var swagger = document.getElementById("swagger-ui");
    if (swagger && window.SwaggerUIBundle) {
      window.SwaggerUIBundle({
        url: swagger.getAttribute("data-openapi-url"),
        dom_id: "#swagger-ui",
        validatorUrl: null,        /* no badge fetched from validator.swagger.io */
        deepLinking: true,
        layout: "BaseLayout"
      });
    }
    var redoc = document.getElementById("redoc");
    if (redoc && window.Redoc) {
      window.Redoc.init(redoc.getAttribute("data-openapi-url"), { hideDownloadButton: false }, redoc);
    }
  });
})();
