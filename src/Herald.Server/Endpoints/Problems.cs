namespace Herald.Server.Endpoints;

/// <summary>RFC 9457 problem answers with a clear detail.</summary>
internal static class Problems
{
    public static IResult BadRequest(string detail) => TypedResults.Problem(detail, statusCode: StatusCodes.Status400BadRequest, title: "Bad request");

    public static IResult NotFound(string detail) => TypedResults.Problem(detail, statusCode: StatusCodes.Status404NotFound, title: "Not found");

    public static IResult Unauthorized() => TypedResults.Problem("A valid API key is required: send 'Authorization: Bearer <key>'.", statusCode: StatusCodes.Status401Unauthorized, title: "Unauthorized");

    public static IResult Forbidden(string detail) => TypedResults.Problem(detail, statusCode: StatusCodes.Status403Forbidden, title: "Forbidden");

    public static IResult Conflict(string detail) => TypedResults.Problem(detail, statusCode: StatusCodes.Status409Conflict, title: "Conflict");

    public static IResult Unavailable(string detail) => TypedResults.Problem(detail, statusCode: StatusCodes.Status503ServiceUnavailable, title: "Service unavailable");
}
