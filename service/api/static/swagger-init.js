// Starts Swagger UI on the MPQ docs page. A file of its own, not an inline script, so
// that the page's Content-Security-Policy can forbid inline scripts (script-src 'self').
// The OpenAPI document's URL comes from the page (data-openapi-url), which knows the
// API's root path.
(function () {
  "use strict";
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.getAttribute("data-openapi-url"),
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    validatorUrl: null, // no badge fetched from validator.swagger.io
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
  });
})();
